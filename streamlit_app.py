"""pneumo: pneumonia detection on pediatric chest X-rays, a teaching dashboard.

The frame: page navigation and the sidebar data set picker shared by every page.
"""

import streamlit as st

from ui.common import dataset_picker

st.set_page_config(page_title="pneumo", page_icon=":material/pulmonology:", layout="wide")

# Pages in a top bar. config.toml hides the sidebar page list, which Streamlit would otherwise
# fill from pages/*.py on a server's very first request, before st.navigation has run.
navigation = st.navigation([
    st.Page("pages/dataset.py", title="Dataset", icon=":material/folder_open:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/image_search:"),
], position="top")
st.session_state["dataset_choice"] = dataset_picker()
navigation.run()
