package main

import (
	"slices"

	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	shells := []string{"bash", "zsh", "fish", "powershell"}
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "print the shell completion script",
		Long: `Print the completion script of a shell. It completes commands, flags,
the values of flags that take one of a list, and service names and key
IDs from the registry at MUSTER_ADDR.

  bash:  source <(muster completion bash)    # in ~/.bashrc; needs bash-completion
  zsh:   muster completion zsh > "${fpath[1]}/_muster"
  fish:  muster completion fish > ~/.config/fish/completions/muster.fish`,
		ValidArgs: shells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(shells, args[0]) {
				return usageError("completion needs one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			}
			return root.GenPowerShellCompletionWithDesc(w)
		},
	}
}
