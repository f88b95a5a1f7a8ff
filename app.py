"""capsim dashboard: wires the pages together (each page lives in capsim/ui/)."""

import streamlit as st

from capsim.ui import memory

st.set_page_config(page_title="capsim", layout="wide")
pages = [st.Page(memory.render, title="Memory per GPU", url_path="memory")]
st.navigation(pages).run()
