"""The baseline every HTTP figure is compared with: a bare Starlette hello-world on uvicorn (httptools+uvloop)."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def hello(request: Request) -> Response:
    body = await request.body()
    return Response(body or b'"hello"', media_type="application/json")


app = Starlette(routes=[Route("/{path:path}", hello, methods=["GET", "POST"])])
