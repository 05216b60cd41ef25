"""The API's routers, one module per group of endpoints: predict, feedback, models, health/status."""
