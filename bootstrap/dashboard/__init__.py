"""The node's live dashboard: its page and static files, the server-sent event stream it listens to
(``stream``), and chart-ready result data (``plots``), added to the API app by :func:`install_dashboard`."""

from bootstrap.dashboard.plots import plot_data
from bootstrap.dashboard.routes import install_dashboard
from bootstrap.dashboard.stream import EVENT_KINDS, sse_message

__all__ = ["EVENT_KINDS", "install_dashboard", "plot_data", "sse_message"]
