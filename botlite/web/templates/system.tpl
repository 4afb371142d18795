% rebase("base.tpl", title="System")
<h1>System</h1>
<section>
<h2>Health</h2>
<p><span class="badge {{"success" if healthy else "failure"}}" id="health-status">{{health["status"]}}</span>
  database {{health["database"]["status"]}}{{" (%s ms)" % health["database"]["ms"] if "ms" in health["database"] else ""}} ·
  queue {{health["queue"]["status"]}} ·
  {{workers["alive"]}} worker process(es), {{workers["threads"]}} thread(s)</p>
% retrieval = health["retrieval"]
<p id="retrieval">Retrieval: <strong>{{"hybrid (BM25 + sentence embeddings)" if retrieval["mode"] == "hybrid" else "BM25 only"}}</strong>
% if retrieval["mode"] == "hybrid" and "chunks" in retrieval:
  · vectors for {{retrieval["vectors"]}} of {{retrieval["chunks"]}} chunks{{"" if retrieval["vectors"] >= retrieval["chunks"] else " (being built; BM25 answers for the rest)"}}
% elif retrieval["mode"] != "hybrid":
  · semantic search {{retrieval["semantic"]}}: {{retrieval.get("detail") or ""}}
% end
</p>
% for reason in health.get("reasons", []):
<p class="error">{{reason}}</p>
% end
% if last_check:
<p id="last-check">Last scheduled <code>health_check</code>: <span class="badge {{"success" if last_check["status"] == "ok" else "failure"}}">{{last_check["status"]}}</span>
  {{last_check["checked_at"]}} ({{"%.0f" % last_check["age_s"]}} s ago)
  % if last_check.get("disk"):
  · disk {{"%.0f" % last_check["disk"]["free_mb"]}} MB free ({{"%.1f" % last_check["disk"]["free_percent"]}} %)
  % end
</p>
% else:
<p class="hint" id="last-check">The scheduled <code>health_check</code> has not run yet (it runs every minute while a worker is up).</p>
% end
</section>
<div class="grid2">
<section>
<h2>Versions</h2>
<table>
  <tbody>
% for name, number in versions:
  <tr><th scope="row">{{name}}</th><td>{{number}}</td></tr>
% end
  </tbody>
</table>
</section>
<section>
<h2>Storage</h2>
<table>
  <tbody>
  <tr><th scope="row">Data directory</th><td><code>{{data_dir}}</code></td></tr>
  <tr><th scope="row">Database</th><td><code>{{database["url"]}}</code>{{" · %.1f MB" % (database["bytes"] / 1e6) if database["bytes"] is not None else ""}}</td></tr>
  <tr><th scope="row">Queue</th><td><code>{{broker["url"]}}</code>{{" · %.1f MB" % (broker["bytes"] / 1e6) if broker["bytes"] is not None else ""}}</td></tr>
  </tbody>
</table>
</section>
</div>
<div class="grid2">
<section>
<h2>Rows</h2>
<table>
  <tbody>
% for table, count in database["tables"].items():
  <tr><th scope="row">{{table}}</th><td>{{count}}</td></tr>
% end
  </tbody>
</table>
</section>
<section>
<h2>Queues</h2>
<table>
  <thead><tr><th scope="col">Queue</th><th scope="col">Pending</th><th scope="col">Scheduled</th><th scope="col">Running</th></tr></thead>
  <tbody>
% for lane, counts in sorted(queues.items()):
  <tr><th scope="row">{{lane}}</th><td>{{counts["pending"]}}</td><td>{{counts["scheduled"]}}</td><td>{{counts["running"]}}</td></tr>
% end
  </tbody>
</table>
<p>Dead letters: <a href="/tasks?status=FAILURE">{{dead}}</a></p>
</section>
</div>

<section>
<h2>Backups</h2>
<p class="hint">Online copies of the SQLite databases in <code>{{backup_folder}}</code>, made by the
<code>backup_data</code> job (see <a href="/schedule">Schedule</a>) or <code>python -m botlite backup</code>;
restore one with <code>python -m botlite restore FILE</code>.</p>
% if backups:
<div class="scroll">
<table id="backups">
  <thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Made (UTC)</th></tr></thead>
  <tbody>
% for b in backups:
  <tr><td><code>{{b["name"]}}</code></td><td>{{"%.1f MB" % (b["bytes"] / 1e6)}}</td><td>{{b["modified"]}}</td></tr>
% end
  </tbody>
</table>
</div>
% else:
<p class="empty">No backups yet. Make one now, or let the nightly <code>backup_data</code> job do it.</p>
% end
<button type="button" data-api="/api/tasks" data-method="POST" data-body='{"name": "backup_data"}' data-then="/tasks/{task_id}">Back up now</button>
</section>

<section>
<h2>Task report</h2>
% if report:
<p class="hint">The last {{report["hours"]}} hours up to {{report["to"]}} ({{report["tasks_seen"]}} tasks), made {{report["created_at"]}}.</p>
<div class="scroll">
<table id="task-report">
  <thead><tr><th scope="col">Task</th><th scope="col">Succeeded</th><th scope="col">Failed</th><th scope="col">Failure rate</th><th scope="col">Per hour</th><th scope="col">Average s</th><th scope="col">p95 s</th></tr></thead>
  <tbody>
% for name, t in sorted(report["tasks"].items()):
  <tr><th scope="row">{{name}}</th><td>{{t["succeeded"]}}</td><td>{{t["failed"]}}</td><td>{{"%.0f %%" % (t["failure_rate"] * 100)}}</td><td>{{t["throughput_per_hour"]}}</td><td>{{t["avg_seconds"] if t["avg_seconds"] is not None else "-"}}</td><td>{{t["p95_seconds"] if t["p95_seconds"] is not None else "-"}}</td></tr>
% end
  </tbody>
</table>
</div>
% else:
<p class="empty">No task report yet: the <code>generate_reports</code> job makes one daily.</p>
% end
<button type="button" data-api="/api/reports/system?refresh=1" data-method="GET" data-then="reload">Make a report now</button>
</section>
