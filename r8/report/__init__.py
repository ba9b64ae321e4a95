"""Reports: the block model (``blocks``: headings, paragraphs, tables, figures rendered to Markdown
and HTML), the writers of each job's ``.json``/``.md`` (+ plots) and the index of every model
measured. They read results as values: may import the core values only, never a front-end,
backend, runtime or job."""
