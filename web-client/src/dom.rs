//! The page: binds `www/index.html`, the WebSocket and the timers to [`ClientState`].
//!
//! It carries the state's [`Effect`]s out and decides nothing itself.
//!
//! Text is only ever set with `textContent` (names and messages are untrusted), each name and
//! message in an element of its own with `dir="auto"` (see [`Part::element`](crate::state::Part::element)), and a node is
//! rewritten only when what it shows changed, so that the live regions (`role=status`,
//! `role=alert`, the log) announce changes, not redraws.

use std::cell::RefCell;
use std::collections::VecDeque;

use chat_core::codec::json::encode_request;
use chat_core::private_prefix;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{
    Document, Element, Event, EventTarget, HtmlElement, HtmlInputElement, MessageEvent,
    UrlSearchParams, WebSocket, Window,
};

use crate::state::{ClientState, Effect, Entry, Field};

/// The log keeps this many entries; older ones are removed from the page.
const MAX_ENTRIES: u32 = 2_000;
/// How close to the bottom (in pixels) the log must be scrolled to follow new entries.
const STICK_TO_BOTTOM_PX: i32 = 48;

thread_local! {
    static APP: RefCell<Option<App>> = const { RefCell::new(None) };
}

/// Runs `f` on the app. Events never nest (none is dispatched synchronously by what `f`
/// does), but should one, it is dropped rather than panicking.
fn with_app(f: impl FnOnce(&mut App)) {
    APP.with(|app| {
        if let Ok(mut app) = app.try_borrow_mut()
            && let Some(app) = app.as_mut()
        {
            f(app);
        }
    });
}

/// The entry point: called once when the module is initialised.
#[wasm_bindgen(start)]
pub fn start() -> Result<(), JsValue> {
    let window = web_sys::window().ok_or("no window")?;
    let doc = window.document().ok_or("no document")?;
    let page = Page::find(&doc)?;
    page.listen()?;
    let url = socket_url(&window);
    let socket_handlers = SocketHandlers::new();
    APP.with(|app| {
        *app.borrow_mut() = Some(App {
            state: ClientState::new(),
            page,
            doc,
            window,
            url,
            socket: None,
            socket_handlers,
            shown: Shown::default(),
        });
    });
    with_app(|app| {
        let effects = app.state.start();
        app.run(effects);
    });
    Ok(())
}

/// `?ws=URL` if given, else `ws://` or `wss://` (as the page's scheme) + host + `/ws`.
fn socket_url(window: &Window) -> String {
    let location = window.location();
    let chosen = location
        .search()
        .ok()
        .and_then(|search| UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get("ws"));
    crate::socket_url(
        &location.protocol().unwrap_or_default(),
        &location.host().unwrap_or_default(),
        chosen.as_deref(),
    )
}

/// The elements of the page the client drives.
struct Page {
    body: HtmlElement,
    status: HtmlElement,
    operator_badge: HtmlElement,
    join_form: HtmlElement,
    name_input: HtmlInputElement,
    name_error: HtmlElement,
    chat: HtmlElement,
    messages: HtmlElement,
    users: HtmlElement,
    user_count: HtmlElement,
    message_form: HtmlElement,
    message_input: HtmlInputElement,
}

fn by_id<T: JsCast>(doc: &Document, id: &str) -> Result<T, JsValue> {
    doc.get_element_by_id(id)
        .ok_or_else(|| JsValue::from_str(&format!("the page has no #{id}")))?
        .dyn_into()
        .map_err(|_| JsValue::from_str(&format!("#{id} is not the element expected")))
}

impl Page {
    fn find(doc: &Document) -> Result<Page, JsValue> {
        Ok(Page {
            body: doc.body().ok_or("the page has no body")?,
            status: by_id(doc, "status")?,
            operator_badge: by_id(doc, "operator-badge")?,
            join_form: by_id(doc, "join-form")?,
            name_input: by_id(doc, "name-input")?,
            name_error: by_id(doc, "name-error")?,
            chat: by_id(doc, "chat")?,
            messages: by_id(doc, "messages")?,
            users: by_id(doc, "users")?,
            user_count: by_id(doc, "user-count")?,
            message_form: by_id(doc, "message-form")?,
            message_input: by_id(doc, "message-input")?,
        })
    }

    /// The user's side: the two forms, typing a name, clicking a name.
    fn listen(&self) -> Result<(), JsValue> {
        let name_input = self.name_input.clone();
        listen(&self.join_form, "submit", move |event| {
            event.prevent_default();
            let name = name_input.value();
            with_app(|app| {
                let effects = app.state.submit_name(&name);
                app.run(effects);
            });
        })?;
        let name_input = self.name_input.clone();
        listen(&self.name_input, "input", move |_| {
            let name = name_input.value();
            with_app(|app| {
                app.state.name_typed(&name);
                app.render();
            });
        })?;
        let message_input = self.message_input.clone();
        listen(&self.message_form, "submit", move |event| {
            event.prevent_default();
            let text = message_input.value();
            with_app(|app| {
                let effects = app.state.submit_message(&text);
                app.run(effects);
            });
        })?;
        let message_input = self.message_input.clone();
        listen(&self.users, "click", move |event| {
            let button = event
                .target()
                .and_then(|t| t.dyn_into::<Element>().ok())
                .and_then(|e| e.closest("button.user").ok().flatten());
            if let Some(name) = button.and_then(|b| b.get_attribute("data-name")) {
                message_input.set_value(&private_prefix(&name));
                let _ = message_input.focus();
            }
        })
    }
}

fn listen(
    target: &EventTarget,
    kind: &str,
    handler: impl FnMut(Event) + 'static,
) -> Result<(), JsValue> {
    let handler = Closure::<dyn FnMut(Event)>::new(handler);
    target.add_event_listener_with_callback(kind, handler.as_ref().unchecked_ref())?;
    // The page lives as long as the listener: keep the closure for good.
    handler.forget();
    Ok(())
}

/// The WebSocket's handlers, made once and set on each new socket.
struct SocketHandlers {
    open: Closure<dyn FnMut()>,
    message: Closure<dyn FnMut(MessageEvent)>,
    close: Closure<dyn FnMut()>,
}

impl SocketHandlers {
    fn new() -> Self {
        SocketHandlers {
            open: Closure::new(|| {
                with_app(|app| {
                    let effects = app.state.opened();
                    app.run(effects);
                })
            }),
            message: Closure::new(|event: MessageEvent| {
                // The server sends only text messages; anything else is not for us.
                if let Some(text) = event.data().as_string() {
                    with_app(|app| {
                        let effects = app.state.received(&text);
                        app.run(effects);
                    });
                }
            }),
            close: Closure::new(|| {
                with_app(|app| {
                    app.drop_socket();
                    let effects = app.state.closed(js_sys::Math::random());
                    app.run(effects);
                })
            }),
        }
    }

    fn attach(&self, socket: &WebSocket) {
        socket.set_onopen(Some(self.open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(self.message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(self.close.as_ref().unchecked_ref()));
    }

    fn detach(socket: &WebSocket) {
        socket.set_onopen(None);
        socket.set_onmessage(None);
        socket.set_onclose(None);
    }
}

/// What the page shows now, so that only changes are written.
#[derive(Default)]
struct Shown {
    status: Option<(String, &'static str)>,
    joined: Option<bool>,
    operator: Option<bool>,
    join_form: Option<bool>,
    chat: Option<bool>,
    name_error: Option<String>,
    roster_version: Option<u64>,
}

struct App {
    state: ClientState,
    page: Page,
    doc: Document,
    window: Window,
    url: String,
    socket: Option<WebSocket>,
    socket_handlers: SocketHandlers,
    shown: Shown,
}

impl App {
    /// Carries out `effects` (and any they lead to), then brings the page up to date.
    fn run(&mut self, effects: Vec<Effect>) {
        // A log scrolled to its end stays there, through new entries and the join form
        // appearing above it.
        let log = &self.page.messages;
        let at_end =
            log.scroll_top() + log.client_height() >= log.scroll_height() - STICK_TO_BOTTOM_PX;
        let mut queue = VecDeque::from(effects);
        let mut focus = None;
        while let Some(effect) = queue.pop_front() {
            match effect {
                Effect::Connect => queue.extend(self.connect()),
                Effect::Send(request) => {
                    if let Some(socket) = &self.socket {
                        // Fails only if the socket is not open; its close event is coming.
                        let _ = socket.send_with_str(&encode_request(&request));
                    }
                }
                Effect::Timer { delay_ms, token } => self.set_timer(delay_ms, token),
                Effect::Append(entry) => self.append(&entry),
                Effect::ClearMessage => self.page.message_input.set_value(""),
                Effect::Focus(field) => focus = Some(field),
            }
        }
        self.render();
        if at_end {
            let log = &self.page.messages;
            log.set_scroll_top(log.scroll_height());
        }
        // After rendering: a hidden element cannot take the focus.
        let _ = match focus {
            Some(Field::Name) => self.page.name_input.focus(),
            Some(Field::Message) => self.page.message_input.focus(),
            None => Ok(()),
        };
    }

    fn connect(&mut self) -> Vec<Effect> {
        self.drop_socket();
        match WebSocket::new(&self.url) {
            Ok(socket) => {
                self.socket_handlers.attach(&socket);
                self.socket = Some(socket);
                Vec::new()
            }
            // A malformed `?ws=` URL: retried with back-off like an unreachable server.
            Err(_) => self.state.closed(js_sys::Math::random()),
        }
    }

    fn drop_socket(&mut self) {
        if let Some(socket) = self.socket.take() {
            SocketHandlers::detach(&socket);
            let _ = socket.close();
        }
    }

    fn set_timer(&self, delay_ms: u32, token: u32) {
        let fire = Closure::once_into_js(move || {
            with_app(|app| {
                let effects = app.state.timer_fired(token);
                app.run(effects);
            })
        });
        let delay = i32::try_from(delay_ms).unwrap_or(i32::MAX);
        let _ = self
            .window
            .set_timeout_with_callback_and_timeout_and_arguments_0(fire.unchecked_ref(), delay);
    }

    fn append(&self, entry: &Entry) {
        let Ok(item) = self.doc.create_element("li") else {
            return;
        };
        item.set_class_name(&format!("entry {}", entry.kind.class()));
        if let Some(seq) = entry.seq {
            let _ = item.set_attribute("data-seq", &seq.to_string());
        }
        for part in &entry.parts {
            match (part.element(), part.class) {
                (Some(tag), Some(class)) => {
                    if let Ok(run) = self.doc.create_element(tag) {
                        run.set_class_name(class);
                        // Its own direction, isolated from the rest of the line.
                        let _ = run.set_attribute("dir", "auto");
                        run.set_text_content(Some(&part.text));
                        let _ = item.append_child(&run);
                    }
                }
                _ => {
                    let _ = item.append_with_str_1(&part.text);
                }
            }
        }
        let log = &self.page.messages;
        let _ = log.append_child(&item);
        while log.child_element_count() > MAX_ENTRIES {
            match log.first_element_child() {
                Some(oldest) => oldest.remove(),
                None => break,
            }
        }
    }

    /// Brings the status line, the visibility of the parts, the name error and the user list
    /// up to date with the state.
    fn render(&mut self) {
        let s = &self.state;
        let page = &self.page;
        let status = (s.status_text(), s.status_state());
        if self.shown.status.as_ref() != Some(&status) {
            page.status.set_text_content(Some(&status.0));
            let _ = page.status.set_attribute("data-state", status.1);
            self.shown.status = Some(status);
        }
        if self.shown.joined != Some(s.joined()) {
            let joined = if s.joined() { "true" } else { "false" };
            let _ = page.body.set_attribute("data-joined", joined);
            self.shown.joined = Some(s.joined());
        }
        if self.shown.operator != Some(s.operator()) {
            let operator = if s.operator() { "true" } else { "false" };
            let _ = page.body.set_attribute("data-operator", operator);
            page.operator_badge.set_hidden(!s.operator());
            self.shown.operator = Some(s.operator());
        }
        if self.shown.join_form != Some(s.show_join_form()) {
            page.join_form.set_hidden(!s.show_join_form());
            self.shown.join_form = Some(s.show_join_form());
        }
        if self.shown.chat != Some(s.show_chat()) {
            page.chat.set_hidden(!s.show_chat());
            self.shown.chat = Some(s.show_chat());
        }
        if self.shown.name_error.as_deref() != Some(s.name_error()) {
            page.name_error.set_text_content(Some(s.name_error()));
            let invalid = if s.name_error().is_empty() {
                "false"
            } else {
                "true"
            };
            let _ = page.name_input.set_attribute("aria-invalid", invalid);
            self.shown.name_error = Some(s.name_error().to_owned());
        }
        if self.shown.roster_version != Some(s.roster_version()) {
            self.draw_users();
            self.shown.roster_version = Some(self.state.roster_version());
        }
    }

    fn draw_users(&self) {
        let users = &self.page.users;
        // Keep the keyboard focus on the same name across the redraw.
        let focused = self
            .doc
            .active_element()
            .filter(|e| users.contains(Some(e)))
            .and_then(|e| e.get_attribute("data-name"));
        users.set_text_content(None);
        let me = self.state.name().map(chat_core::name_key);
        for name in self.state.roster() {
            let (Ok(item), Ok(button)) = (
                self.doc.create_element("li"),
                self.doc.create_element("button"),
            ) else {
                return;
            };
            let _ = button.set_attribute("type", "button");
            let _ = button.set_attribute("data-name", name);
            let is_me = me.as_deref() == Some(chat_core::name_key(name).as_str());
            let operator = self.state.is_operator(name);
            let class = match (is_me, operator) {
                (true, true) => "user me operator",
                (true, false) => "user me",
                (false, true) => "user operator",
                (false, false) => "user",
            };
            button.set_class_name(class);
            let title = if operator {
                format!("{name}, an operator: send a private message")
            } else {
                format!("Send {name} a private message")
            };
            let _ = button.set_attribute("title", &title);
            // A right-to-left name keeps its own direction and reorders nothing around it.
            let _ = button.set_attribute("dir", "auto");
            button.set_text_content(Some(name));
            if operator && let Ok(mark) = self.doc.create_element("span") {
                // Marked `@` as /who marks operators; the mark is no part of the name, which
                // the button keeps in `data-name`.
                mark.set_class_name("op-mark");
                mark.set_text_content(Some("@"));
                let _ = button.prepend_with_node_1(&mark);
            }
            let _ = item.append_child(&button);
            let _ = users.append_child(&item);
            if focused.as_deref() == Some(name.as_str())
                && let Some(button) = button.dyn_ref::<HtmlElement>()
            {
                let _ = button.focus();
            }
        }
        self.page
            .user_count
            .set_text_content(Some(&self.state.count().to_string()));
    }
}
