from feedlab.cli import app

app()
