//! The dev-mode demo's message list (what `routes::demo` sends and lists), kept in the
//! application state; a leaf module so the state does not depend on the routes.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Messages kept in all conversations together; the oldest go first.
pub const MAX_MESSAGES: usize = 1000;

/// One sent message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    pub conversation: String,
    pub principal: String,
    pub text: String,
    pub attachments: Vec<String>,
    pub created_at: String,
}

/// The demo's sent messages: bounded, in memory, gone on restart.
#[derive(Default)]
pub struct Messages {
    /// A std mutex: held only to push or copy out, never across an `.await`.
    list: Mutex<(u64, VecDeque<Message>)>,
}

impl Messages {
    pub fn push(&self, mut m: Message) -> String {
        let mut g = self.list.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        m.id = format!("m_{}", g.0);
        let id = m.id.clone();
        if g.1.len() >= MAX_MESSAGES {
            g.1.pop_front();
        }
        g.1.push_back(m);
        id
    }

    pub fn in_conversation(&self, conversation: &str) -> Vec<Message> {
        let g = self.list.lock().unwrap_or_else(|e| e.into_inner());
        g.1.iter()
            .filter(|m| m.conversation == conversation)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded_and_kept_per_conversation() {
        let m = Messages::default();
        for i in 0..(MAX_MESSAGES + 10) {
            let conv = if i % 2 == 0 { "a" } else { "b" };
            m.push(Message {
                id: String::new(),
                conversation: conv.into(),
                principal: "anon:x".into(),
                text: i.to_string(),
                attachments: vec![],
                created_at: String::new(),
            });
        }
        let a = m.in_conversation("a");
        let b = m.in_conversation("b");
        assert_eq!(a.len() + b.len(), MAX_MESSAGES);
        assert!(a.iter().all(|x| x.conversation == "a"));
        assert_eq!(b.last().unwrap().text, (MAX_MESSAGES + 9).to_string());
    }
}
