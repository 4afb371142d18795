% rebase("base.tpl", title="Error")
<h1>{{error.status}} · {{error.code}}</h1>
<p class="error" role="alert">{{error.message}}</p>
<p><a href="/">Back to the chatbots</a></p>
