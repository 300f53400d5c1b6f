"""Browser apps (the optional `.[app]` extra, Gradio): clinicians rate packets, users compare models.

Only the command line's ``rate`` / ``compare`` and the Space import these modules, so the core
stages never load gradio.
"""

# No API page, no server-side rendering (it needs Node), no tracebacks in the browser.
LAUNCH_OPTIONS = {"footer_links": [], "ssr_mode": False, "show_error": False}
