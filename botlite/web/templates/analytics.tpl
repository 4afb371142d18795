% rebase("base.tpl", title=bot.name + " · analytics")
% include("bot_nav.tpl")
<h1>Analytics</h1>
<form method="get" action="/bots/{{bot.id}}/analytics" class="filters">
  <div><label for="period">Period</label>
  <select id="period" name="period">
  % for value, label in (("7d", "last 7 days"), ("30d", "last 30 days"), ("90d", "last 90 days")):
    <option value="{{value}}"{{!" selected" if value == report["period"] else ""}}>{{label}}</option>
  % end
  </select></div>
  <button type="submit">Show</button>
  <button type="submit" name="refresh" value="1">Recompute now</button>
</form>
<p class="hint">{{report["from"]}} to {{report["to"]}} (UTC) · computed {{report["generated_at"]}}{{" (kept for an hour; Recompute now includes the latest messages)" if report.get("cached") else ""}}</p>
% totals = report["totals"]
% if not totals["messages"]:
<p class="empty">No messages in this period. Chat in the <a href="/bots/{{bot.id}}/playground">playground</a> or embed the <a href="/bots/{{bot.id}}/settings">widget</a>; the charts fill in as visitors ask.</p>
% end
<dl class="facts totals">
  <dt>Messages</dt><dd id="total-messages">{{totals["messages"]}}</dd>
  <dt>Conversations</dt><dd>{{totals["conversations"]}}</dd>
  <dt>Visitors</dt><dd>{{totals["sessions"]}}</dd>
  <dt>Fallback rate</dt><dd>{{"%.0f %%" % (totals["fallback_rate"] * 100)}} ({{totals["fallbacks"]}} unanswered)</dd>
  <dt>Reply latency</dt><dd>{{"%.0f ms average" % totals["avg_latency_ms"] if totals["avg_latency_ms"] is not None else "-"}}{{", %.0f ms p95" % totals["p95_latency_ms"] if totals["p95_latency_ms"] is not None else ""}}</dd>
  <dt>Feedback</dt><dd>{{totals.get("helpful", 0)}} helpful, {{totals.get("not_helpful", 0)}} not helpful</dd>
</dl>
<section><h2>Messages per day</h2>{{!charts["daily"]}}</section>
<section><h2>Fallback rate per day</h2>{{!charts["fallback"]}}</section>
<section><h2>Reply latency per day</h2>{{!charts["latency"]}}</section>
<section><h2>Intents</h2>{{!charts["intents"]}}</section>
<section><h2>Answer sources</h2>{{!charts["sources"]}}</section>
<div class="grid2">
<section>
<h2>Top questions</h2>
% if report["top_questions"]:
<ol>
% for q in report["top_questions"]:
  <li>{{q["question"]}} <span class="hint">×{{q["count"]}}</span></li>
% end
</ol>
% else:
<p class="hint">None yet.</p>
% end
</section>
<section>
<h2>Top unanswered</h2>
% if report["top_unanswered"]:
<p class="hint">Add an FAQ or a document for these.</p>
<ol>
% for q in report["top_unanswered"]:
  <li>{{q["question"]}} <span class="hint">×{{q["count"]}}</span></li>
% end
</ol>
% else:
<p class="hint">Nothing went unanswered.</p>
% end
</section>
</div>
