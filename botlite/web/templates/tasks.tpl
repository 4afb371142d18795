% rebase("base.tpl", title="Tasks")
<h1>Tasks</h1>
<div id="tasks-live" data-refresh="/tasks/fragments/live" data-refresh-ms="2000" aria-live="polite">
% include("tasks_live.tpl")
</div>

<section>
<h2>Throughput</h2>
{{!throughput}}
<p class="legend"><span class="key s0"></span> succeeded <span class="key s1"></span> failed or revoked</p>
</section>

<section>
<h2>Failed tasks</h2>
% if not failed:
<p class="empty">No failed tasks. Tasks that fail after their last retry show up here with their traceback.</p>
% else:
<ul class="failed">
% for t in failed:
  <li class="card" id="failed-{{t["task_id"]}}">
    <p><a href="/tasks/{{t["task_id"]}}"><b>{{t["name"]}}</b></a> <code>{{t["task_id"]}}</code>
      <span class="hint">finished {{t["finished_at"]}} after {{t["attempts"]}} attempt(s)</span></p>
    <p class="error">{{t["error"]}}</p>
    % if t["traceback"]:
    <details><summary>Traceback</summary><pre>{{t["traceback"]}}</pre></details>
    % end
    <button type="button" data-api="/api/tasks/{{t["task_id"]}}/retry" data-method="POST" data-then="reload">Retry</button>
  </li>
% end
</ul>
% end
</section>

<section>
<h2>Recent tasks</h2>
<form method="get" action="/tasks" class="filters">
  <div><label for="filter-status">State</label>
  <select id="filter-status" name="status">
    <option value="">any</option>
  % for s in statuses:
    <option value="{{s}}"{{!" selected" if s == status else ""}}>{{s}}</option>
  % end
  </select></div>
  <div><label for="filter-name">Name</label>
  <select id="filter-name" name="name">
    <option value="">any</option>
  % for n in task_names:
    <option value="{{n}}"{{!" selected" if n == name else ""}}>{{n}}</option>
  % end
  </select></div>
  <button type="submit">Filter</button>
</form>
% if not recent:
<p class="empty">No tasks{{" in state " + status if status else ""}}{{" named " + name if name else ""}}. Upload a document or add a website to a bot to start one.</p>
% else:
% include("task_table.tpl", rows=recent, caption="Recent tasks")
% end
</section>
