from nimbus.cli.main import app

app()
