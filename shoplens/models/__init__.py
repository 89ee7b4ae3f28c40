"""models part of Shoplens."""
