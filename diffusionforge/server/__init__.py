"""`diffusionforge serve`: an HTTP API and a web page over the pipelines.

`server.app.create_app(ServerSettings(...))` builds the FastAPI app (routes in app.py); the
job queue is jobs.py, the models folder registry.py, one handler per modality in handlers.py.
Nothing is imported here, so `diffusionforge --help` does not load FastAPI.
"""
