"""The web dashboard: one HTML page plus its script and style sheet, served from the
package (`pool/web/static/`), so nothing is fetched from a CDN at run time.

The page only reads the public JSON API, and the account routes with a token the user
types in (kept in the tab's sessionStorage). A strict Content-Security-Policy allows
nothing but the pool's own scripts, styles and API.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from pool.web.settings import ApiSettings

STATIC_DIR = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def dashboard_routes(settings: ApiSettings) -> list[web.AbstractRouteDef]:
    """`/` (the page, with the poll interval filled in) and `/static/` (its assets)."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{refresh_s}}", f"{settings.refresh_s:g}")

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", charset="utf-8",
                            headers=SECURITY_HEADERS)

    return [web.get("/", index), web.static("/static", STATIC_DIR)]
