"""Browser apps (the optional `.[app]` extra, Gradio): clinicians rate packets, users compare models."""
