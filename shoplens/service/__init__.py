"""service part of Shoplens."""
