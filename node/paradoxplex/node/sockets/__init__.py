"""The downstream side: the listener, one session per socket, and hosting them (admission,
registration, the first-byte hold, the node-wide reply budget); the node's listening ends
(the listener's and the admin API's servers, as they start, pause and move) and the drain of
its sockets."""
