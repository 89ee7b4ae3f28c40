"""ar_assets part of Shoplens."""
