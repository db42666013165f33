//! `sipbox:route/auth`: digest authentication of the current request, as a
//! route sees it. The checking itself is `crate::auth`'s; this file keeps
//! what one invocation learnt (who authenticated, whether the nonce was
//! stale) for `check-to`, `check-from` and `challenge`.

use wasmtime::component::{HasData, Linker};

use crate::auth::{Auth, AuthFailure, Identity, identity_matches};
use crate::runtime::bindings::auth::{self, AuthError, Identity as WitIdentity};
use crate::runtime::bindings::tm::TmError as WitTmError;
use crate::runtime::host::tm::to_wit;
use crate::runtime::replay::{Import, Journal, Journaled};
use crate::runtime::state::{HostState, need_tx};
use crate::transaction::ServerTx;

/// What the invocation's `authorize` found.
#[derive(Default)]
pub(crate) struct AuthState {
    identity: Option<Identity>,
    stale: bool,
}

impl AuthState {
    pub(crate) fn end(&mut self) {
        *self = AuthState::default();
    }
}

/// What `auth` reaches for one call ([`HostState::auth`]).
pub(crate) struct AuthView<'a> {
    pub(crate) tx: Option<&'a ServerTx>,
    pub(crate) journal: Option<&'a mut Journal>,
    pub(crate) state: &'a mut AuthState,
    pub(crate) auth: &'a Auth,
}

impl Journaled for AuthView<'_> {
    fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_deref_mut()
    }
}

struct HasAuth;

impl HasData for HasAuth {
    type Data<'a> = AuthView<'a>;
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    auth::add_to_linker::<HostState, HasAuth>(linker, HostState::auth)
}

fn to_wit_error(failure: AuthFailure) -> AuthError {
    match failure {
        AuthFailure::NoCredentials => AuthError::NoCredentials,
        AuthFailure::Stale => AuthError::StaleNonce,
        AuthFailure::Invalid => AuthError::InvalidCredentials,
        AuthFailure::Replayed => AuthError::Replayed,
        AuthFailure::Malformed(why) => AuthError::Malformed(why),
        AuthFailure::Throttled(s) => AuthError::Throttled(s),
    }
}

impl auth::Host for AuthView<'_> {
    fn required(&mut self) -> wasmtime::Result<bool> {
        Ok(self.auth.required())
    }

    fn authorize(&mut self) -> wasmtime::Result<Result<WitIdentity, AuthError>> {
        let tx = need_tx(self.tx)?;
        // Once per invocation: a replay must not count the nonce again
        // (it would look replayed) nor the failure twice.
        let result =
            self.once(Import::AuthAuthorize, (), |view| Ok(view.auth.authorize(tx.request(), tx.source().1.ip())))?;
        self.state.stale = matches!(result, Err(AuthFailure::Stale));
        self.state.identity = result.as_ref().ok().cloned();
        Ok(result.map(|Identity { user, realm }| WitIdentity { user, realm }).map_err(to_wit_error))
    }

    fn challenge(&mut self) -> wasmtime::Result<Result<(), WitTmError>> {
        let tx = need_tx(self.tx)?;
        let stale = self.state.stale;
        self.once(Import::AuthChallenge, stale, |view| {
            let challenge = view.auth.challenge(tx.request(), stale);
            let headers: Vec<(&str, &str)> = challenge.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            Ok(tx.reply(challenge.code, challenge.reason, &headers, None).map_err(to_wit))
        })
    }

    fn check_to(&mut self) -> wasmtime::Result<bool> {
        let tx = need_tx(self.tx)?;
        let to = tx.request().to().ok();
        Ok(self.state.identity.as_ref().is_some_and(|id| identity_matches(id, to.and_then(|t| t.parsed_uri().ok()))))
    }

    fn check_from(&mut self) -> wasmtime::Result<bool> {
        let tx = need_tx(self.tx)?;
        let from = tx.request().from().ok();
        Ok(self.state.identity.as_ref().is_some_and(|id| identity_matches(id, from.and_then(|f| f.parsed_uri().ok()))))
    }
}
