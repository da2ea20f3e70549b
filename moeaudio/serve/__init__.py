"""`moeaudio serve`: a trained model behind OpenAI-compatible audio endpoints, and a demo page.

* :mod:`~moeaudio.serve.options` -- the command's options (light: ``moeaudio --help`` reads them);
* :mod:`~moeaudio.serve.protocol` -- OpenAI's request and response shapes, and its error shape;
* :mod:`~moeaudio.serve.engine` -- one worker thread owns the model and answers queued requests in
  batches, through the same windowing, generation and routing code as ``transcribe``, ``eval``
  and ``analyze-routing``;
* :mod:`~moeaudio.serve.app` -- the FastAPI routes, error handlers, API key and body-size limit;
* :mod:`~moeaudio.serve.main` -- load the model once and run uvicorn.
"""
