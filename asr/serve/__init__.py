"""`asr-serve`: an HTTP transcription service with a web page, one job per module.

    engine.py         Transcriber: a model (asr.inference.transcription.Engine) and its decoders; one upload's bytes
                      -> text, word timings, (posteriorgram); thread-safe
    upload.py         reading a multipart upload under a size cap; RequestError (status + one-line message)
    posteriorgram.py  the CTC posteriors (T', C) as a PNG data URL
    app.py            the Starlette app: /, /health, /transcribe, /static; every refusal is a JSON error
    cli.py            the Hydra entry point: bind, load, serve with uvicorn, stop gracefully on SIGTERM
    static/           the page (index.html, app.js, style.css): upload or record, transcript, highlighting
"""
