"""A fake Gemini API (``generativelanguage.googleapis.com``) for Veo, as in google-genai 2.19.0.

``POST /v1beta/models/{model}:predictLongRunning`` (``x-goog-api-key``) ->
``{"name": "models/{model}/operations/{id}"}``; ``GET /v1beta/{name}`` ->
``done: false`` for ``running_polls`` polls, then ``done: true`` with
``response.generateVideoResponse.generatedSamples[0].video.uri``, or an
``error`` (google.rpc.Status), or a response filtered by the content filter
(``raiMediaFilteredCount``/``raiMediaFilteredReasons``, no samples).
``GET /v1beta/files/{id}:download?alt=media`` redirects, as the real files
service does, to a storage host (the same server under ``localhost``) that
serves the MP4 and must not see the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_providers import Handler, serve

__all__ = ["serve_google"]

_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"


class _Google(Handler):
    auth = ("x-goog-api-key", "")

    def unauthorized_body(self) -> Any:
        return {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
            }
        }

    def do_POST(self) -> None:
        got = self.record()
        if not self.authorized(got) or self.scripted():
            return
        route = got.route
        if not (route.startswith("/v1beta/models/") and route.endswith(":predictLongRunning")):
            self.send_json(404, {"error": {"code": 404, "message": "not found"}})
            return
        model = route.removeprefix("/v1beta/models/").removesuffix(":predictLongRunning")
        body = got.body or {}
        instances = body.get("instances")
        if not isinstance(instances, list) or len(instances) != 1 or "prompt" not in instances[0]:
            self.send_json(
                400,
                {"error": {"code": 400, "message": "instances[0].prompt is required",
                           "status": "INVALID_ARGUMENT"}},
            )  # fmt: skip
            return
        if "seed" in body.get("parameters", {}):
            self.send_json(
                400,
                {"error": {"code": 400, "message": "seed isn't supported by this model.",
                           "status": "INVALID_ARGUMENT"}},
            )  # fmt: skip
            return
        name = f"models/{model}/operations/op{self.fake.new_job():04d}"
        with self.fake.lock:
            self.fake.jobs[name] = body
        self.send_json(200, {"name": name})

    def do_GET(self) -> None:
        got = self.record()
        route = got.route
        if route.startswith("/storage/"):
            self.send_video()  # a signed storage URL: no key needed
            return
        if not self.authorized(got) or self.scripted():
            return
        if route.startswith("/v1beta/files/") and route.endswith(":download"):
            file_id = route.removeprefix("/v1beta/files/").removesuffix(":download")
            self.redirect(f"{self.fake.other_host_url}/storage/{file_id}.mp4?sig=abc")
            return
        name = route.removeprefix("/v1beta/")
        if name not in self.fake.jobs:
            self.send_json(404, {"error": {"code": 404, "message": f"{name} not found"}})
            return
        op: dict[str, Any] = {"name": name}
        if not self.fake.job_done(name):
            op["done"] = False
            op["metadata"] = {"@type": _TYPE.replace("Response", "Metadata")}
        elif self.fake.fail_with:
            code, message = self.fake.fail_with
            op |= {"done": True, "error": {"code": code, "message": message}}
        elif self.fake.refuse_with:
            op |= {
                "done": True,
                "response": {
                    "@type": _TYPE,
                    "generateVideoResponse": {
                        "raiMediaFilteredCount": 1,
                        "raiMediaFilteredReasons": [self.fake.refuse_with],
                    },
                },
            }
        else:
            file_id = name.rsplit("/", 1)[-1].replace("op", "f")
            uri = f"{self.fake.base_url}/v1beta/files/{file_id}:download?alt=media"
            op |= {
                "done": True,
                "response": {
                    "@type": _TYPE,
                    "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
                },
            }
        self.send_json(200, op)


def serve_google(video: Path, key: str) -> Any:
    """A fake Gemini API serving ``video`` as every operation's sample."""
    return serve(_Google, video, key)
