% rebase("base.tpl", title="Schedule")
<h1>Schedule</h1>
<p class="hint">Periodic jobs, in UTC. A crontab has five fields: minute, hour, day of
month, month, day of week (<code>*/15 * * * *</code> is every 15 minutes,
<code>30 3 * * *</code> is 03:30 every day). The next runs update as you type.</p>
% if not jobs:
<p class="empty">No scheduled jobs. They are created when botlite starts; restart <code>python -m botlite serve</code> to get the defaults back.</p>
% else:
<ul class="jobs">
% for job in jobs:
  <li class="card{{"" if job["enabled"] else " disabled"}}" id="job-{{job["name"]}}" data-enabled="{{"true" if job["enabled"] else "false"}}">
    <h2>{{job["name"]}} <span class="badge {{"success" if job["enabled"] else "revoked"}}">{{"enabled" if job["enabled"] else "disabled"}}</span></h2>
    <p class="hint">runs <code>{{job["task"]}}</code>{{"(%s)" % ", ".join(str(a) for a in job["args"]) if job["args"] else ""}}{{" · " + job["description"] if job.get("description") else ""}}</p>
    <dl class="facts">
      <dt>Next run</dt><dd>{{job["next_run"] or "never (disabled)"}}</dd>
      <dt>Last run</dt><dd>{{job["last_run"] or "not yet"}}
      % if job.get("last_task_id"):
        · <a href="/tasks/{{job["last_task_id"]}}">task</a>
      % end
      </dd>
      <dt>Last status</dt><dd>
      % if job["last_status"]:
        <span class="badge {{job["last_status"].lower()}}">{{job["last_status"]}}</span>
      % else:
        -
      % end
      </dd>
    </dl>
    <form data-api="/api/schedule/{{job["name"]}}" data-method="PATCH" data-then="reload" class="crontab-form">
      <label for="cron-{{job["name"]}}">Crontab</label>
      <input id="cron-{{job["name"]}}" name="crontab" value="{{job["crontab"]}}" required
             data-preview="/api/schedule/preview" data-preview-target="runs-{{job["name"]}}"
             aria-describedby="runs-label-{{job["name"]}}">
      <p class="hint" id="runs-label-{{job["name"]}}">Next runs (UTC):</p>
      <ol class="next-runs" id="runs-{{job["name"]}}" aria-live="polite">
      % for when in job.get("next_runs", []):
        <li>{{when}}</li>
      % end
      </ol>
      <p class="form-error error" role="alert" hidden></p>
      <button type="submit">Save crontab</button>
      % if job["enabled"]:
      <button type="button" class="danger" data-api="/api/schedule/{{job["name"]}}" data-method="PATCH" data-body='{"enabled": false}' data-then="reload">Disable</button>
      % else:
      <button type="button" data-api="/api/schedule/{{job["name"]}}" data-method="PATCH" data-body='{"enabled": true}' data-then="reload">Enable</button>
      % end
      <button type="button" data-api="/api/schedule/{{job["name"]}}/run" data-method="POST" data-then="/tasks/{task_id}">Run now</button>
    </form>
  </li>
% end
</ul>
% end
