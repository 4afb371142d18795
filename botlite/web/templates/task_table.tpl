<div class="scroll">
<table class="tasks">
  <caption class="visually-hidden">{{caption}}</caption>
  <thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Queue</th><th scope="col">Progress</th><th scope="col">Enqueued (UTC)</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>
% for t in rows:
  % progress = t["progress"] or {}
  <tr id="task-{{t["task_id"]}}" data-status="{{t["status"]}}" data-name="{{t["name"]}}">
    <td><a href="/tasks/{{t["task_id"]}}">{{t["name"]}}</a> <code class="hint">{{t["task_id"][:8]}}</code></td>
    <td><span class="badge {{t["status"].lower()}}">{{t["status"]}}</span></td>
    <td>{{t["queue"]}}</td>
    <td>
    % if progress.get("total"):
      <progress max="{{progress["total"]}}" value="{{min(progress.get("done") or 0, progress["total"])}}" aria-label="{{t["name"]}} progress">{{progress.get("done")}}/{{progress["total"]}}</progress>
      <span class="hint">{{progress.get("done")}}/{{progress["total"]}}</span>
    % elif progress:
      <span class="hint">{{progress.get("done")}} done</span>
    % end
    </td>
    <td>{{t["enqueued_at"] or ""}}</td>
    <td class="actions">
    % if t["status"] in ("FAILURE", "REVOKED"):
      <button type="button" data-api="/api/tasks/{{t["task_id"]}}/retry" data-method="POST" data-then="reload">Retry</button>
    % elif t["status"] in ("PENDING", "STARTED", "RETRY"):
      <button type="button" class="danger" data-api="/api/tasks/{{t["task_id"]}}/revoke" data-method="POST" data-confirm="Revoke task {{t["name"]}}?" data-then="reload">Revoke</button>
    % end
    </td>
  </tr>
% end
  </tbody>
</table>
</div>
