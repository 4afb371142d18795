<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
% if csrf:
<meta name="csrf-token" content="{{csrf}}">
% end
<title>{{title}} · botlite</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">botlite</a> <span class="version">{{version}}</span>
% if csrf:
  <nav aria-label="Main">
    <a href="/"{{!' aria-current="page"' if section == "bots" else ""}}>Bots</a>
    <a href="/tasks"{{!' aria-current="page"' if section == "tasks" else ""}}>Tasks</a>
    <a href="/schedule"{{!' aria-current="page"' if section == "schedule" else ""}}>Schedule</a>
    <a href="/notifications"{{!' aria-current="page"' if section == "notifications" else ""}}>Notifications</a>
    <a href="/system"{{!' aria-current="page"' if section == "system" else ""}}>System</a>
  </nav>
  <form method="post" action="/logout" class="logout">
    <input type="hidden" name="csrf_token" value="{{csrf}}">
    <button type="submit">Log out</button>
  </form>
% end
</header>
<main id="main">
{{!base}}
</main>
</body>
</html>
