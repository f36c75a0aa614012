"""`POST /nimbus/v1/images`: an image tarball uploaded directly (docker save's docker-archive, or an OCI layout
as a tar) instead of pulled from a registry; answers the `ImageUri` to deploy it with
(`nimbus.local/uploads@sha256:<hex>`). The body goes through the API's request size limit (SigV4 hashes it)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from nimbus.api.body import read_body
from nimbus.api.responses import request_id_header
from nimbus.control.images import ImageStore
from nimbus.errors import InvalidParameterValue, ServiceError


async def upload_image(request: Request) -> Response:
    images: ImageStore | None = request.app.state.platform.images
    if images is None:
        raise ServiceError("Container images are not available on this server.")
    body = await read_body(request, request.app.state.platform.settings.request_body_max_bytes)
    if not body:
        raise InvalidParameterValue("Upload the image tarball as the request body.")
    fd, name = tempfile.mkstemp(prefix=".upload-", suffix=".tar", dir=images.root)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        image = await asyncio.to_thread(images.import_archive, Path(name))
    finally:
        os.unlink(name)
    return JSONResponse({"ImageUri": image.image_uri, "CodeSha256": image.digest_hex}, status_code=201,
                        headers=request_id_header())


routes: list[BaseRoute] = [Route("/nimbus/v1/images", upload_image, methods=["POST"])]
