"""The browser side of jaxstyle (the optional extra `pip install 'jaxstyle[web]'`).

- `live.Live`: one run as its page sees it, fed by the run's progress callback; the run
  never waits on the web (`live` docstring).
- `view`: the live view's routes (`--serve` on a long command); `server`: the aiohttp
  application in its own thread, the guard against other sites, server-sent events.
- `jaxstyle serve`: `inputs` (uploads and a folder of images, checked as the command line
  checks files), `jobs` (the runs, one at a time on the device, queued), `gallery` (the
  results with their settings), `app` (its routes).
- `address`: `[HOST:]PORT` and the bound socket (standard library only).

The core library never imports this package; the command line does, when asked.
"""
