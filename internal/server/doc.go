// Package server assembles a muster node: catalog, Raft node, heartbeat
// tracker and sweeper, callback verifier and HTTP API. It is what
// `muster server` runs, and what tests and the demo embed.
//
//	cfg := server.DefaultConfig()
//	cfg.HTTPAddr, cfg.DataDir = "127.0.0.1:0", dir
//	s, err := server.New(cfg)
//	err = s.Start(ctx)
//	defer s.Close()
//	fmt.Println(s.URL())
package server
