"""The web service that reads CAPTCHAs: a page and a JSON API over one model (`python serve.py`).

- `serving.images`: uploaded bytes to the array the model takes, refusing what is not a sane image.
- `serving.uploads`: the request body, bounded in size, and the images in it (raw or multipart).
- `serving.batching`: requests that arrive together read in one model call.
- `serving.captchas`: fresh CAPTCHAs from the model's own generator.
- `serving.app`: the FastAPI application that joins them, and the page under `serving/page/`.
"""
