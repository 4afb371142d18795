<div class="meta">
  <span>intent <b>{{m["intent"] or "none"}}</b></span>
  <span>source <b>{{m["answer_source"] or "-"}}</b></span>
  <span>confidence <b>{{"%.2f" % m["confidence"] if m["confidence"] is not None else "-"}}</b></span>
  % if m.get("latency_ms") is not None:
  <span>{{"%.0f" % m["latency_ms"]}} ms</span>
  % end
</div>
% if m["sources"]:
<ol class="citations">
% for n, cite in enumerate(m["sources"], 1):
  % href = cite["url"] if (cite.get("url") or "").startswith(("http://", "https://")) else "/bots/%s/sources/%s" % (bot.id, cite["source_id"])
  <li><a href="{{href}}" rel="noopener noreferrer">[{{n}}] {{cite["title"] or cite["url"] or cite["source_id"]}}</a>
    <span class="hint">{{cite.get("snippet") or ""}}</span></li>
% end
</ol>
% end
