"""Shop the look: the separate products in one photo, each with its own results.

- ``boxes``: ``Box`` (fractions of the photo as shown) and non-maximum suppression.
- ``proposals``: class-agnostic candidate boxes (OpenCV selective search on a
  small copy, plus multi-scale windows), capped so a photo stays within budget.
- ``finder``: ``find_regions``: every proposal cropped from one decode, embedded
  in one batch by the search's own ``ImageEmbedder``, searched in the live
  index with the request's filters, scored, suppressed, best region first.

Part of the ``serving`` room: may import what ``serving`` may (``catalog``,
``vectors``, ``engines``, ``sources``, ``shoplens.models``) and ``serving`` itself.
"""
