"""The web dashboards: a page per job for its artist on the requester, the operator's view on the master.

Starlette on Hypercorn's trio worker, in the node's own nursery, so pages read
the node's folded state directly and never block it. Server-rendered HTML;
the live part of a page is re-sent over server-sent events when it changes.
Every page needs a signed, expiring token (``?t=``): a job's link from
``frender submit``, or the operator's from ``frender operator web-token``.
"""

from frender.apps.web._master import master_app, serve_master_web
from frender.apps.web._requester import (
    LINK_SECONDS,
    Gallery,
    requester_app,
    serve_requester_web,
)
from frender.apps.web._server import WebUnavailable, parse_bind, serve_web
from frender.apps.views import JobFacts, MasterView, RequesterView, media_type_of
from frender.apps.web._token import (
    OPERATOR,
    BadToken,
    Claims,
    job_scope,
    read_token,
    sign_token,
)

__all__ = [
    "JobFacts",
    "MasterView",
    "RequesterView",
    "media_type_of",
    "LINK_SECONDS",
    "OPERATOR",
    "BadToken",
    "Claims",
    "Gallery",
    "WebUnavailable",
    "job_scope",
    "master_app",
    "parse_bind",
    "read_token",
    "requester_app",
    "serve_master_web",
    "serve_requester_web",
    "serve_web",
    "sign_token",
]
