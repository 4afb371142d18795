<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · botlite</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<header><a class="brand" href="/">botlite</a> <span class="version">{{version}}</span></header>
<main>
{{!base}}
</main>
</body>
</html>
