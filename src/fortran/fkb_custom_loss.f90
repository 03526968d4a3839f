!! User-defined losses: extend `fkb_custom_loss` with `evaluate` (value and gradient), and pass
!! an instance to `net%compile(optimizer, custom_loss=...)`.
!!
!!     type, extends(fkb_custom_loss) :: my_loss
!!     contains
!!       procedure :: evaluate => my_evaluate
!!     end type
!!
!! `evaluate` receives the predictions y(n_out, batch), the targets t (same shape) and the
!! sample weights w (size batch, or size 0 for none), and returns the batch loss and its
!! gradient with respect to y (the same reduction as the value: usually a mean over the
!! batch). A non-zero stat (with msg) reports a failure: the step is not applied.
module fkb_custom_loss_m
  use iso_fortran_env, only: real64
  implicit none
  private
  public :: fkb_custom_loss

  type, abstract :: fkb_custom_loss
  contains
    procedure(evaluate_i), deferred :: evaluate
  end type fkb_custom_loss

  abstract interface
    subroutine evaluate_i(self, y, t, w, value, grad, stat, msg)
      import :: fkb_custom_loss, real64
      class(fkb_custom_loss), intent(inout) :: self
      real(real64), intent(in) :: y(:, :), t(:, :), w(:)
      real(real64), intent(out) :: value
      real(real64), intent(out) :: grad(:, :)
      integer, intent(out) :: stat
      character(len=:), allocatable, intent(inout) :: msg
    end subroutine evaluate_i
  end interface

end module fkb_custom_loss_m
