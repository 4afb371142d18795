% rebase("base.tpl", title="Log in")
<h1>Log in</h1>
% if error:
<p class="error" role="alert">{{error}}</p>
% end
<form method="post" action="/login" class="card narrow">
  <input type="hidden" name="csrf_token" value="{{login_csrf}}">
  <input type="hidden" name="next" value="{{next}}">
  <label for="token">Admin token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required>
  <button type="submit">Log in</button>
</form>
<p class="hint">Run <code>python -m botlite token</code> to print the token, or open the
URL that <code>python -m botlite serve</code> printed.</p>
