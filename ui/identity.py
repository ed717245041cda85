"""Who is using this browser session, drawn in the sidebar: the page side of ``pneumo.access``.

Solo mode draws one line; class mode asks for a name and, for the teacher, the passcode; login
mode shows Streamlit's log-in (``st.login``) and lets nobody further until it succeeds.
"""

from __future__ import annotations

import hmac
import time

import streamlit as st

from pneumo.access import LOCAL, MAX_USER_NAME_CHARS, TEACHER_NAME, Mode, Policy, User, class_user, login_user
from ui.common import plain, policy

PASSCODE_TRIES = 5  # wrong passcodes a browser session may type before it is refused for good


def current_user() -> User | None:
    """This session's user (None: a class-mode student who has not typed a name yet). Normally
    set by streamlit_app.py; a page run from its own script draws the sidebar itself."""
    if "user" not in st.session_state:
        st.session_state["user"] = sidebar(policy())
    return st.session_state["user"]


def sidebar(rules: Policy) -> User | None:
    """The identity box at the top of the sidebar; in login mode, stops the page until logged in."""
    if rules.mode == Mode.SOLO:
        st.sidebar.caption("Solo mode: one user, everything allowed.")
        return LOCAL
    if rules.mode == Mode.LOGIN:
        return _login(rules)
    return _class(rules)


def _login(rules: Policy) -> User:
    if not st.user.is_logged_in:
        st.subheader("Log in")
        st.write("This server asks you to log in, so that your runs are recorded as yours.")
        st.button("Log in", type="primary", icon=":material/login:", on_click=st.login)
        st.stop()
    # An address the provider says it has not verified could be anyone's, a teacher's included.
    teachers = rules.teacher_emails if st.user.get("email_verified") is not False else frozenset()
    user = login_user(str(st.user.get("email") or st.user.get("sub") or ""), teachers)
    with st.sidebar:
        st.markdown(f"Signed in as {plain(user.name)}" + (" · **teacher**" if user.teacher else ""))
        st.button("Log out", icon=":material/logout:", on_click=st.logout)
    return user


def _class(rules: Policy) -> User | None:
    teacher = st.session_state.get("id_teacher", False)
    with st.sidebar:
        st.caption("Class mode: your runs are yours to stop, rename and delete; the teacher's passcode unlocks "
                   "every run.")
        st.text_input("Your name", key="id_name", max_chars=MAX_USER_NAME_CHARS, placeholder="as the class knows you",
                      help="Your runs are recorded under this name: only you and the teacher can stop, "
                           "rename or delete them.")
        try:
            user = class_user(st.session_state["id_name"] or (TEACHER_NAME if teacher else ""), teacher)
        except ValueError as exc:
            st.caption(str(exc) + " Until then you can look at everything but start nothing.")
            user = None
        with st.expander("Teacher" + (" (unlocked)" if teacher else "")):
            if teacher:
                st.button("Lock teacher rights", key="id_lock", on_click=st.session_state.update,
                          kwargs={"id_teacher": False})
            else:
                _passcode(rules)
    return user


def _passcode(rules: Policy) -> None:
    tries = st.session_state.setdefault("id_tries", 0)
    if tries >= PASSCODE_TRIES:
        st.error("Too many wrong passcodes: open a new tab to try again.")
        return
    with st.form("id_unlock", border=False, clear_on_submit=True):  # a form: Enter in the box unlocks too
        typed = st.text_input("Passcode", type="password", key="id_passcode")
        unlock = st.form_submit_button("Unlock")
    if unlock and typed:
        if hmac.compare_digest(typed.encode(), rules.teacher_passcode.encode()):
            st.session_state.update(id_teacher=True, id_tries=0)
            st.rerun()
        st.session_state["id_tries"] = tries + 1
        time.sleep(1.0)  # slows guessing down; five tries per tab
        st.error("Wrong passcode.")
