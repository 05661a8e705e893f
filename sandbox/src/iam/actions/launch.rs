//! (in progress): the authorizations a StartInstanceRefresh with a launch template makes on the caller's behalf.
