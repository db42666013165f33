//! `route:NAME`: an `event_route[NAME]`, run by the
//! [`EventRouteHandler`] the scheme was built with (the runtime: a route
//! component's `on-event` export). Never expires (OpenSIPS core `route:`).

use std::sync::Arc;

use crate::events::{DeliverFut, Event, EventError, EventRouteHandler, Sink, SinkError};

pub(crate) fn parse(rest: &str, handler: Option<Arc<dyn EventRouteHandler>>) -> Result<Arc<dyn Sink>, EventError> {
    let name = rest.trim();
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EventError::BadSocket(format!("route:{rest}: needs a route name without spaces")));
    }
    Ok(Arc::new(RouteSink { socket: format!("route:{name}"), route: Arc::from(name), handler }))
}

struct RouteSink {
    socket: String,
    route: Arc<str>,
    handler: Option<Arc<dyn EventRouteHandler>>,
}

impl Sink for RouteSink {
    fn socket(&self) -> &str {
        &self.socket
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(async move {
            let handler = self.handler.as_ref().ok_or(SinkError::NoHandler)?;
            handler.run_event_route(self.route.clone(), event.clone()).await;
            Ok(())
        })
    }

    fn supports_expire(&self) -> bool {
        false
    }
}
