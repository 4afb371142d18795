% rebase("base.tpl", title=bot.name + " · knowledge")
% include("bot_nav.tpl")
<h1>Knowledge</h1>
<div class="grid2">
<section class="card">
  <h2>Upload files</h2>
  <div class="dropzone" data-upload="/api/chatbots/{{bot.id}}/sources" data-refresh-target="sources-table">
    <p>Drop PDF, DOCX, XLSX, CSV, TXT, MD or HTML files here, or</p>
    <input id="upload-file" type="file" multiple class="visually-hidden">
    <label for="upload-file" class="button">Choose files</label>
    <p class="form-error error" role="alert" hidden></p>
    <p class="upload-status" role="status" aria-live="polite"></p>
  </div>
</section>
<section class="card">
  <h2>Add a website</h2>
  <form data-api="/api/chatbots/{{bot.id}}/sources" data-method="POST" data-then="refresh:sources-table" id="add-url">
    <label for="url">Start URL</label>
    <input id="url" name="url" type="url" required placeholder="https://example.com/docs/">
    <div class="row">
      <div><label for="max-depth">Link depth</label>
      <input id="max-depth" name="max_depth" type="number" min="0" max="10" value="2" data-type="int"></div>
      <div><label for="max-pages">Max pages</label>
      <input id="max-pages" name="max_pages" type="number" min="1" max="1000" value="50" data-type="int"></div>
    </div>
    <p class="form-error error" role="alert" hidden></p>
    <button type="submit">Crawl website</button>
  </form>
</section>
</div>
<section>
<h2>Sources</h2>
<div id="sources-table" data-refresh="/bots/{{bot.id}}/fragments/sources" data-refresh-ms="1000" data-refresh-while="[data-live-active]" aria-live="polite">
% include("sources_table.tpl")
</div>
</section>
