"""The API's routers, one module per group of endpoints: predict, feedback, models, health/status.

`api.app.create_app` includes them; each route's statuses are declared with `responses=errors(...)`.
"""
