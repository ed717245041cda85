"""pneumo: the library behind the dashboard. Everything that is not UI; never imports streamlit."""
