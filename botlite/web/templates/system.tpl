% rebase("base.tpl", title="System")
<h1>System</h1>
<section>
<h2>Health</h2>
<p><span class="badge {{"success" if healthy else "failure"}}" id="health-status">{{health["status"]}}</span>
  database {{health["database"]["status"]}}{{" (%s ms)" % health["database"]["ms"] if "ms" in health["database"] else ""}} ·
  queue {{health["queue"]["status"]}} ·
  {{workers["alive"]}} worker process(es), {{workers["threads"]}} thread(s)</p>
% for reason in health.get("reasons", []):
<p class="error">{{reason}}</p>
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
