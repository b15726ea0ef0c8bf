package policy

import "github.com/sshgate/sshgate/internal/gate"

// ResolveName finds the target a name, an alias or a node id (the NODEID of
// NODEID-UID, when node is not 0) designates, over the store's target infos.
// It returns "" when none or more than one does (the store keeps aliases
// unique and apart from names, so two is only a safety net). The broker
// routes with it and the second factor decides its mode with it: both must
// land on the same target.
func ResolveName(infos []gate.TargetInfo, name string, node int64) string {
	var found []string
	for _, ti := range infos {
		switch {
		case node != 0:
			if ti.ID == node {
				found = append(found, ti.Target)
			}
		case ti.Target == name:
			return ti.Target // a name beats any alias
		default:
			for _, a := range ti.Aliases {
				if a == name {
					found = append(found, ti.Target)
				}
			}
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}
