% rebase("base.tpl", title=(source.title or source.filename or source.id) + " · source")
% include("bot_nav.tpl")
<h1>{{source.title or source.filename or source.url or source.id}}</h1>
<dl class="facts">
  <dt>Kind</dt><dd>{{source.file_kind or source.kind}}</dd>
% if source.url:
  <dt>URL</dt><dd>{{source.url}}</dd>
% end
% if source.filename:
  <dt>File</dt><dd>{{source.filename}}</dd>
% end
  <dt>Status</dt><dd><span class="badge {{source.status}}">{{source.status}}</span></dd>
% if source.error:
  <dt>Error</dt><dd class="error">{{source.error}}</dd>
% end
  <dt>Chunks</dt><dd>{{source.chunk_count}}</dd>
  % if vectors is not None:
  <dt>Vectors</dt><dd data-vectors>{{vectors.vectors}} of {{vectors.chunks}} (semantic search uses them as they arrive)</dd>
  % end
% if source.task_id:
  <dt>Task</dt><dd><a href="/tasks/{{source.task_id}}"><code>{{source.task_id}}</code></a></dd>
% end
</dl>
<h2>Chunks</h2>
% if not chunks:
<p class="empty">No chunks yet: the source is not processed. Its status above says why.</p>
% else:
<ol class="chunks">
% for chunk in chunks:
  <li id="chunk-{{chunk.id}}">
    % if chunk.heading or chunk.locator:
    <div class="hint">{{chunk.heading or ""}} {{chunk.locator or ""}}</div>
    % end
    <p>{{chunk.text}}</p>
  </li>
% end
</ol>
% if len(chunks) == 100:
<p class="hint">The first 100 chunks.</p>
% end
% end
