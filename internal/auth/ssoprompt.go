package auth

import (
	"image/color"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// ssoPrompt is the one keyboard-interactive prompt of a device sign-in: the
// page to open, the code, and a QR code of the complete URL (so a phone
// opens it with the code filled in). OpenSSH prints a prompt as it is.
func ssoPrompt(verifyURI, complete, code string) string {
	var b strings.Builder
	b.WriteString("sshgate: sign in with your identity provider\n")
	if complete != "" {
		b.WriteString("  open    " + complete + "\n")
		b.WriteString("  or go to " + verifyURI + " and enter the code " + code + "\n")
	} else {
		b.WriteString("  go to " + verifyURI + " and enter the code " + code + "\n")
		complete = verifyURI
	}
	if q := qrText(complete); q != "" {
		b.WriteString(q)
	}
	b.WriteString("Press Enter once you have approved the sign-in: ")
	return b.String()
}

// qrText draws s as a QR code in half blocks, two modules per character
// cell, light modules drawn (a terminal's background is usually dark, and
// a scanner wants dark modules on light), with the quiet zone around it.
// "" when s does not fit a QR code.
func qrText(s string) string {
	code, err := qr.Encode(s, qr.M, qr.Auto)
	if err != nil {
		return ""
	}
	n := code.Bounds().Dx()
	const quiet = 2
	dark := func(x, y int) bool {
		x, y = x-quiet, y-quiet
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		r, _, _, _ := code.At(x, y).RGBA()
		return r < 0x8000 && code.At(x, y) != color.Transparent
	}
	var b strings.Builder
	size := n + 2*quiet
	for y := 0; y < size; y += 2 {
		b.WriteString("  ")
		for x := 0; x < size; x++ {
			top, bottom := !dark(x, y), y+1 < size && !dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}
