"""A real browser on another origin calls a real `serve`: a page served from origin A (a second aiohttp
server on another port) POSTs a WHIP offer to the worker on origin B, reads `Location` and DELETEs the
call, through the `--cors-origins` allow-list; without the allow-list the browser refuses both."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser_util import CHROMEDRIVER, CHROMIUM, chromium, require_tools
from tests.serve_util import TOKEN, serve
from tests.support import FIXTURES

pytestmark = pytest.mark.slow

PAGE = """<!doctype html><meta charset="utf-8"><title>origin A</title>
<script>
async function callWorker(base, token) {
  const out = {};
  try {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("audio", {direction: "sendonly"});
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === "complete") return done();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
      setTimeout(done, 3000);
    });
    const res = await fetch(base + "/whip", {
      method: "POST",
      headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token},
      body: pc.localDescription.sdp,
    });
    out.status = res.status;
    out.location = res.headers.get("Location");
    const answer = await res.text();
    if (res.status === 201) {
      await pc.setRemoteDescription({type: "answer", sdp: answer});
      const del = await fetch(new URL(out.location, base), {
        method: "DELETE", headers: {"Authorization": "Bearer " + token},
      });
      out.deleteStatus = del.status;
      out.deleteBody = await del.json();
    }
    pc.close();
  } catch (e) {
    out.error = String(e);
  }
  return out;
}
</script>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def origin_a() -> AsyncIterator[str]:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application()
    app.add_routes([web.get("/", page)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _run_page(driver: Any, page: str, worker: str) -> dict[str, Any]:
    driver.set_script_timeout(30)
    driver.get(page)
    script = (
        "const done = arguments[arguments.length - 1]; callWorker(arguments[0], arguments[1]).then(done);"
    )
    return dict(driver.execute_async_script(script, worker, TOKEN))


async def test_page_on_another_origin_calls_through_the_allow_list_only(
    origin_a: str, tmp_path: Path
) -> None:
    require_tools(CHROMIUM, CHROMEDRIVER)
    for sub in ("allowed", "refused"):
        (tmp_path / sub).mkdir()
    driver = await asyncio.to_thread(chromium, FIXTURES / "silence.wav", tmp_path / "profile")
    try:
        with serve(tmp_path / "allowed", cors_origins=f"https://other.example.org, {origin_a}") as srv:
            allowed = await asyncio.to_thread(_run_page, driver, origin_a + "/", srv.url)
        with serve(tmp_path / "refused") as srv:
            refused = await asyncio.to_thread(_run_page, driver, origin_a + "/", srv.url)
    finally:
        await asyncio.to_thread(driver.quit)
    assert "error" not in allowed, allowed
    assert allowed["status"] == 201 and allowed["location"].startswith("/whip/"), allowed
    assert allowed["deleteStatus"] == 200 and allowed["deleteBody"]["call_id"] == allowed["location"][6:]
    assert refused.get("error", "").startswith("TypeError"), refused  # "Failed to fetch": CORS refused
    assert "status" not in refused
