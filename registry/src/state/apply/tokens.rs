//! Client tokens: create (hash only), revoke, and the one-time bootstrap admin token.

use plum_raft_store::DataWrites;

use crate::state::command::CommandResult;
use crate::state::keys;
use crate::state::records::TokenRecord;
use crate::state::rows;
use crate::state::view::Registry;

impl Registry {
    /// `Changed { count: 0 }` when nothing was recorded: the id exists (a retried create), or
    /// a bootstrap token was recorded before.
    pub(super) fn create_token(
        &mut self,
        token: &TokenRecord,
        bootstrap: bool,
        writes: &mut DataWrites,
    ) -> CommandResult {
        if self.tokens.contains_key(&token.id) || (bootstrap && self.tokens_bootstrapped) {
            return CommandResult::Changed { count: 0 };
        }
        if bootstrap {
            self.tokens_bootstrapped = true;
            writes.put(keys::TOKENS_BOOTSTRAPPED.to_vec(), rows::encode(&true));
        }
        writes.put(keys::token(&token.id), rows::encode(token));
        self.tokens.insert(token.id.clone(), token.clone());
        CommandResult::Changed { count: 1 }
    }

    pub(super) fn revoke_token(&mut self, id: &str, writes: &mut DataWrites) -> CommandResult {
        if self.tokens.remove(id).is_none() {
            return CommandResult::NotFound;
        }
        writes.delete(keys::token(id));
        CommandResult::Done
    }
}
