"""pneumo: pneumonia detection on pediatric chest X-rays, a teaching dashboard.

The frame: page navigation, who is using this session (``ui.identity``), and the sidebar data
set picker shared by every page.
"""

import streamlit as st

from pneumo.access import Mode
from ui.common import dataset_picker, import_tensorflow_soon, keep_keras_session, page_style, policy
from ui.identity import sidebar

st.set_page_config(page_title="pneumo", page_icon=":material/pulmonology:", layout="wide")

# The default page lives at / and reserves its own name, which Streamlit does not serve: it is
# "home", so that /dataset, named like the other pages, can lead to it.
dataset = st.Page("app_pages/dataset.py", title="Dataset", icon=":material/folder_open:", default=True,
                  url_path="home")


def dataset_by_name() -> None:
    st.switch_page(dataset)


navigation = st.navigation([
    dataset,
    st.Page(dataset_by_name, title="Dataset", url_path="dataset", visibility="hidden"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/monitoring:"),
    st.Page("app_pages/board.py", title="Board", icon=":material/leaderboard:"),
    st.Page("app_pages/predict.py", title="Predict", icon=":material/image_search:"),
], position="top")
page_style()
keep_keras_session()
rules = policy()
if rules.mode != Mode.SOLO:  # a shared server shows students no tracebacks and no server paths
    st.set_option("client.showErrorDetails", "none")
st.session_state["user"] = sidebar(rules)
st.session_state["dataset_choice"] = dataset_picker()
navigation.run()
import_tensorflow_soon()  # after the page: its first visitor does not wait for it
