% if active:
<span data-live-active hidden></span>
% end
% if not sources:
<p class="empty">No sources yet. Upload a file or add a website above; the bot answers from them once they are ready.</p>
% else:
<div class="scroll">
<table class="sources">
  <thead><tr><th scope="col">Title</th><th scope="col">Kind</th><th scope="col">Status</th><th scope="col">Chunks</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
  <tbody>
  % for s in sources:
  % done, total = s.progress_done or 0, s.progress_total
  % label = s.title or s.filename or s.url or s.id
    <tr id="source-{{s.id}}" data-status="{{s.status}}">
      <td><a href="/bots/{{s.chatbot_id}}/sources/{{s.id}}">{{label}}</a>
        % if s.url:
        <div class="hint">{{s.url}}</div>
        % end
      </td>
      <td>{{s.file_kind or s.kind}}</td>
      <td>
        <span class="badge {{s.status}}">{{s.status}}</span>
        % if s.status == "ready":
        <progress max="1" value="1" aria-label="{{label}}: done">done</progress>
        % elif s.status in ("pending", "processing"):
          % if total:
        <progress max="{{total}}" value="{{min(done, total)}}" aria-label="{{label}}: {{done}} of {{total}}">{{done}}/{{total}}</progress>
        <span class="hint">{{done}}/{{total}}</span>
          % else:
        <progress aria-label="{{label}}: working">working</progress>
          % end
        % end
        % if s.error:
        <div class="error">{{s.error}}</div>
        % end
      </td>
      <td>{{s.chunk_count}}
        % v = vectors.get(s.id) if vectors is not None else None
        % if v is not None and v.chunks and not v.to_dict()["done"]:
        <div class="hint" data-vectors>vectors {{v.vectors}}/{{v.chunks}}</div>
        % elif v is not None and v.chunks:
        <div class="hint" data-vectors>vectors ready</div>
        % end
      </td>
      <td class="actions">
        % if s.status == "failed":
        <button type="button" data-api="/api/sources/{{s.id}}/reprocess" data-method="POST" data-then="refresh:sources-table">Retry</button>
        % end
        <button type="button" class="danger" data-api="/api/sources/{{s.id}}" data-method="DELETE" data-confirm="Delete the source &quot;{{label}}&quot; and its chunks?" data-then="refresh:sources-table">Delete</button>
      </td>
    </tr>
  % end
  </tbody>
</table>
</div>
% end
