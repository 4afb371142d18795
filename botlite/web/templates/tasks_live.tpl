<section>
<h2>Queues</h2>
<div class="scroll">
<table class="queues">
  <thead><tr><th scope="col">Queue</th><th scope="col">Pending</th><th scope="col">Scheduled</th><th scope="col">Running</th></tr></thead>
  <tbody>
% for lane, counts in sorted(queues.items()):
  <tr><th scope="row">{{lane}}</th><td>{{counts["pending"]}}</td><td>{{counts["scheduled"]}}</td><td>{{counts["running"]}}</td></tr>
% end
  </tbody>
</table>
</div>
<p>Dead letters (failed after all retries): <b id="dead-count">{{dead}}</b></p>
</section>
<section>
<h2>Running</h2>
% if not running:
<p class="empty">Nothing is running right now.</p>
% else:
% include("task_table.tpl", rows=running, caption="Running tasks")
% end
</section>
