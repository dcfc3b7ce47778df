"""The long-lived query service: ``pipeline.service.app.create_app(settings)`` and the ``serve`` command.

Nothing is imported here, so registering ``pipeline.service.command.serve`` in the CLI stays cheap.
"""
