"""Data coming in: a new broker source is a ``<kind>_source.py`` here, its settings in
``settings`` and its branch in ``kinds``; every batch then takes the ingest path (``ingest``:
validation, row append, late labels, rejections), HTTP bodies decoded, the API's inbox."""
