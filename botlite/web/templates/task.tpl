% rebase("base.tpl", title="Task " + task["name"])
% import json
<p class="crumbs"><a href="/tasks">Tasks</a> › <code>{{task["task_id"]}}</code></p>
<h1>{{task["name"]}} <span class="badge {{task["status"].lower()}}">{{task["status"]}}</span></h1>
<dl class="facts">
  <dt>Queue</dt><dd>{{task["queue"]}}</dd>
  <dt>Attempts</dt><dd>{{task["attempts"]}} (retries left: {{task["retries_left"]}})</dd>
  <dt>Arguments</dt><dd><code>{{json.dumps(task["args"])}}</code> <code>{{json.dumps(task["kwargs"])}}</code></dd>
  <dt>Enqueued</dt><dd>{{task["enqueued_at"] or "-"}}</dd>
  <dt>Started</dt><dd>{{task["started_at"] or "-"}}</dd>
  <dt>Finished</dt><dd>{{task["finished_at"] or "-"}}</dd>
% if task["next_attempt_at"]:
  <dt>Next attempt</dt><dd>{{task["next_attempt_at"]}}</dd>
% end
% if task["progress"]:
  <dt>Progress</dt><dd>{{task["progress"].get("done")}} / {{task["progress"].get("total") or "?"}}</dd>
% end
% if task["worker"]:
  <dt>Worker</dt><dd>{{task["worker"]}}</dd>
% end
% if task["error"]:
  <dt>Error</dt><dd class="error">{{task["error"]}}</dd>
% end
% if task["result"] is not None:
  <dt>Result</dt><dd><pre>{{json.dumps(task["result"], indent=2)}}</pre></dd>
% end
</dl>
% if task["traceback"]:
<h2>Traceback</h2>
<pre class="traceback">{{task["traceback"]}}</pre>
% end
<p>
% if task["status"] in ("FAILURE", "REVOKED"):
<button type="button" data-api="/api/tasks/{{task["task_id"]}}/retry" data-method="POST" data-then="reload">Retry</button>
% elif task["status"] in ("PENDING", "STARTED", "RETRY"):
<button type="button" class="danger" data-api="/api/tasks/{{task["task_id"]}}/revoke" data-method="POST" data-confirm="Revoke this task?" data-then="reload">Revoke</button>
% end
</p>
